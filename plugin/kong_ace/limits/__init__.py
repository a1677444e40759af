"""Rate limits: window strategies over interchangeable counter stores."""
