"""Multi-agent text environments with the PettingZoo API."""
