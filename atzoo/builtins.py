"""Built-in backbones, losses and methods, registered through the same hooks as any plugin."""
