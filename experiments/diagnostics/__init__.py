"""What a run records: per-layer gradient-flow metrics on logged steps (``recorder``), the
mean-field theory next to them (``theory``), all kept in one ``history.npz`` (``history``)."""
