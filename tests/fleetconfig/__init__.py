"""Tests for orchestrator.fleetconfig: loading, validating and editing the fleet files."""
