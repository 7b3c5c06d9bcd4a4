"""Animation: Deforum's 2D mode, its settings files, schedules, frame operations and video."""
