-- A read-only role for Grafana's PostgreSQL data source. The alert store's tables are
-- created by `pantau store` (as the owner role, `pantau` in docker-compose.yml) after
-- this runs, so the grant covers tables created later too. Run once by a superuser:
-- the postgres image runs it from /docker-entrypoint-initdb.d, the tests with psql.
-- To have this role (and pantau's) connect over TLS only, as a Dinas Sosial server
-- should, put `hostssl pantau grafana,pantau 0.0.0.0/0 scram-sha-256` before any `host`
-- line of pg_hba.conf, and give the data source sslmode verify-full with the CA.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana') THEN
        CREATE ROLE grafana LOGIN PASSWORD 'grafana';
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO grafana;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO grafana;
ALTER DEFAULT PRIVILEGES FOR ROLE pantau IN SCHEMA public GRANT SELECT ON TABLES TO grafana;
