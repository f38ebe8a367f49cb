"""Tests of the Machines API client, checked against Fly's OpenAPI document."""
