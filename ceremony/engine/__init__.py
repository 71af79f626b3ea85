"""The UI-free ceremony engine: a state machine over a script (see engine.core)."""
