-- One database per service, created on the first start of the PostgreSQL volume.
CREATE DATABASE tandem_journal;
CREATE DATABASE tandem_milestones;
CREATE DATABASE tandem_notify;
