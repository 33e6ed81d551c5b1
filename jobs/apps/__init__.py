"""Apps: versioned executables outside projects, shared by name (app-NAME, app-NAME/VERSION, app-xxxx)."""
