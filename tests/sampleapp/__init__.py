"""Tests of the sample app: real processes, real HTTP on 127.0.0.1."""
