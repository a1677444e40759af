"""The pure decision: config -> catalog -> Decision. Never imports the Kong edge."""
