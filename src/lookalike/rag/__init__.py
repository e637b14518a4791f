"""image RAG: documents' text, OCR, retrieval for questions."""
