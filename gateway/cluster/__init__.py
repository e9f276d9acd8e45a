"""Many workers on many nodes acting as one gateway: who holds which charge point, node messages."""
