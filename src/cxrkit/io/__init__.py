"""File formats: images, CheXmask RLE and landmarks, geometry, atomic writes. No torch here."""
