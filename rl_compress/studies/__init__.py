"""Studies: a YAML grid of games x students x losses x actors x seeds, run locally or on Ray, and
reported as tables and plots."""
