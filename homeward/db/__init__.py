"""Database access: connections, migrations, named SQL queries and error translation."""
