"""Tests of disaster-recovery drills."""
