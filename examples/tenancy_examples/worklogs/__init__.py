"""Demonstrates a tenant-isolated time-tracking API built only on the tenancy library."""
