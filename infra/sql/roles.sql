-- Roles of a tenancy deployment: run once per cluster, as a superuser.
--
--   tenancy_owner  owns the schema and runs migrations (`tenancy db migrate`);
--   tenancy_app    is what the services connect as: DML only, never superuser, never
--                  BYPASSRLS, owns nothing (an owner could switch RLS off).
--
-- Then, in each application database:
--   GRANT CREATE, USAGE ON SCHEMA public TO tenancy_owner;
--   GRANT USAGE ON SCHEMA public TO tenancy_app;
-- and set passwords (or certificates) out of band: none are written here.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tenancy_owner') THEN
    CREATE ROLE tenancy_owner LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tenancy_app') THEN
    CREATE ROLE tenancy_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB;
  END IF;
END
$$;
