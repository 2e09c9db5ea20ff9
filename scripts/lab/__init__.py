"""lab: watch each lesson of "Let's Build A Web Server" happen (see __main__)."""
