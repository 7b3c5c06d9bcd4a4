"""Development tools kept beside the code but outside the runtime packages (not installed with Salon)."""
