//! Whole builds of recipes with files, templates and command tasks.
