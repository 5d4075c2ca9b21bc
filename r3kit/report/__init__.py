"""Reports from the files a run wrote: figures and tables, the transcript explorer, live training curves."""
