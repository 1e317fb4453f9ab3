DROP TABLE request_fingerprints;
