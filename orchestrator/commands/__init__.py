"""What the command line calls: deploy, rollback, resume, status, scale and the drill's entry."""
