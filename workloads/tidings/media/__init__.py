"""Media attachments: blob stores (local files, S3), the upload slots, thumbnails and the
orphan sweeper (docs/media.md)."""
