"""What a run leaves to read: REPORT.md, figures, CSV and TensorBoard exports."""
