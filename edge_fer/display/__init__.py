"""What goes on the screen: the overlay drawing and the screen it is shown on."""
