"""Jobs and their task runs: started, listed, shown, cancelled."""
