"""The deployment files under infra/, validated offline."""
