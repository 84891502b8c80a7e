"""The benchmark harness (`agentstream bench`) and the capacity planner (`agentstream plan`)."""
