"""Books to character relation graphs: text → characters → pairs → relations → edges → graph exports."""
