"""Tests for orchestrator.spec: loading, validating and editing the fleet files."""
