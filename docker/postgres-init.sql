-- One database per service, each owned by that service's own role (the only one
-- that may connect to it besides the administrator), created on the first start
-- of the PostgreSQL volume. Passwords come from the container's environment.
\getenv journal_password JOURNAL_DB_PASSWORD
\getenv milestones_password MILESTONES_DB_PASSWORD
\getenv notify_password NOTIFY_DB_PASSWORD

CREATE ROLE tandem_journal LOGIN PASSWORD :'journal_password';
CREATE ROLE tandem_milestones LOGIN PASSWORD :'milestones_password';
CREATE ROLE tandem_notify LOGIN PASSWORD :'notify_password';

CREATE DATABASE tandem_journal OWNER tandem_journal;
CREATE DATABASE tandem_milestones OWNER tandem_milestones;
CREATE DATABASE tandem_notify OWNER tandem_notify;

REVOKE ALL ON DATABASE tandem_journal FROM PUBLIC;
REVOKE ALL ON DATABASE tandem_milestones FROM PUBLIC;
REVOKE ALL ON DATABASE tandem_notify FROM PUBLIC;
