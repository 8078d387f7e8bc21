"""The bottom layer: errors, config dataclass helpers, files written whole, output checks, stop signals,
progress bars, tables and provenance. Imports nothing else of the package."""
