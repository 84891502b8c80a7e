"""The implementations ours is compared with, each run as a child process by the bench.

Every peer reads the same pre-loaded events topic from the beginning with its own group and writes
one action per event to its own output topic, computing it with the same core (`common.Logic`).
"""
