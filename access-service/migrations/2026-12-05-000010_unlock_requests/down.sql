DROP TABLE unlock_requests;
