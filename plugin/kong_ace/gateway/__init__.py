"""The Kong edge: the PDK plugin, its schema, the plugin server and its protocol."""
