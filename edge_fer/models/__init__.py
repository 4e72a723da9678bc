"""The shipped emotion model (package data): edge_fer_student.pte, its metadata and model card."""
