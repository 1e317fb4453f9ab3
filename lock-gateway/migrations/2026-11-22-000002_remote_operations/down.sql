DROP TABLE remote_operations;
