"""Backups and restores of the central database with pgBackRest (issue 17): settings, configuration, commands."""
