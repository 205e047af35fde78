"""The one-command development launcher: embedded Redis, migrations, the Procfile."""
