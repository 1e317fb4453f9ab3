DROP TABLE passcode_operations;
