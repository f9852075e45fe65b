"""The one training loop every stage runs, the optimiser and schedule, the loss and miner registry."""
