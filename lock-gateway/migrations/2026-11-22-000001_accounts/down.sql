DROP TABLE ttlock_accounts;
