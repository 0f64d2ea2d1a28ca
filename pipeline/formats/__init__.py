"""File formats: the exports archives and QDA programs read, and the transcripts and codes ohp imports."""
