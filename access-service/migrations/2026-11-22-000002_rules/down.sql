DROP TABLE rule_users;
DROP TABLE rules;
DROP TABLE memberships;
DROP TABLE users;
DROP TABLE doors;
DROP TRIGGER tenants_notify ON tenants;
DROP TRIGGER properties_notify ON properties;
DROP FUNCTION notify_access_change();
