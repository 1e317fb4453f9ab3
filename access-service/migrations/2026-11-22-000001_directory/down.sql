DROP TABLE properties;
DROP TABLE tenants;
