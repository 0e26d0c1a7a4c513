"""Pure science steps (train, explore, select, label): plain inputs and outputs, no FireWorks, no database."""
