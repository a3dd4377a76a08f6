"""The scheduler: one leader dispatches ready tasks, re-queues lost ones, fires schedules."""
