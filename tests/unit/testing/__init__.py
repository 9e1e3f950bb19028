"""Tests of the isolation test kit: the evidence pack."""
