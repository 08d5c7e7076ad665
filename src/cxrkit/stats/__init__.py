"""Dataset statistics (pure functions on label matrices and metadata tables) and their plots."""
