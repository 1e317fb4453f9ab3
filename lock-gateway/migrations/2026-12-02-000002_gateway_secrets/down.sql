DROP TABLE IF EXISTS gateway_secrets;
