from streams.cli import main

# Guarded: the parser sandbox's child processes (spawn) import this module again.
if __name__ == "__main__":
    main()
