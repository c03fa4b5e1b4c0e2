"""Jobs built on consumer groups, driven by one YAML file and ``sluice run``: dispatch and monitor."""
