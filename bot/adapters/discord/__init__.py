"""The Discord adapter, on discord.py: client.py wires gateway events to the bot."""
